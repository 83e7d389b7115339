"""Domain functions: the business rules, callable without HTTP."""
