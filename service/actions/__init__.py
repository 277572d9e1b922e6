"""Actions: calls the bot may make to the team's own APIs, one YAML file each in SUPPORTBOT_ACTIONS_DIR.

`base` is the shape (what an action is, what a call gave, what the model is told); `files` reads and validates
the files; `caller` makes one call safely; `check` backs `supportbot actions check`.
"""
