"""The operator's console (`cli-trading console`): a live terminal dashboard over the agents'
HTTP APIs, with the runbook's actions at one key."""
