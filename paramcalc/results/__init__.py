"""The one home of results: each command's typed result, one module per
command, all built on results/base.py (`Document`: `schema_version`,
`command`, `notes`; `Report`: a document about one model)."""
