"""The one home of results: each command's typed result, one module per
command, all built on results/base.py (`Document`: `schema_version`,
`command`, `notes`; `Report`: a document about one model)."""

# Here rather than in base.py, which imports pydantic: the fast path writes a
# stored preset's count (analysis/count.py `count_data`) without it.
SCHEMA_VERSION = 1
