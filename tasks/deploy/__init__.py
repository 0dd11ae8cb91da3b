"""Deploy loop: gate, trigger a target, watch, roll back; fix experiments."""
