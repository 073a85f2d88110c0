"""reports/report.md: the findings' sections, tables and charts."""
