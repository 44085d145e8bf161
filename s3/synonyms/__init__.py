"""The synonym bank: LLM replies parsed and normalised, stored per dataset with provenance."""
