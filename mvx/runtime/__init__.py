"""The runtime: monitors carrying out the core's plans, sessions, the channel between them."""
