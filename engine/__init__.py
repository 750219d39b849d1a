"""PolicyKB: medical-billing policy as Datalog."""
