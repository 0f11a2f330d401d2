"""The mechanics of interception: the traced variant, seccomp filters, replay, the C loop."""
