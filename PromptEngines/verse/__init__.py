"""VerSe (IPMI 2025): object and click queries for cardiac MRI, slice by slice."""
