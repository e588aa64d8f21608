"""The master patient index: who is each event about? Links source identities to one citizen_id."""
