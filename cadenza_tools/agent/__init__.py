"""``cadenza agent``: runs command tasks on this machine for the control plane (docs/agents.md).
Never shipped in the Lambda package."""
