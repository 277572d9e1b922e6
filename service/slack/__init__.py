"""Slack app mode: the one boundary to Slack (its Web API, its signed requests) and what goes through it.

`client` calls the Web API, `signing` verifies Slack's requests, `threads` writes the outbox rows a handoff
and the visitor's later messages make, `delivery` posts them, `replies` turns a reply in a thread into an
agent's reply to the visitor.
"""
