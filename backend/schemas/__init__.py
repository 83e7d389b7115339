"""Pydantic request (…Create/…Update) and response (…Public) models of the mini-program API."""
