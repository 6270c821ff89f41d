"""Tooling: the embedding model export and the operator simulator; never imported by a service or the operator."""
