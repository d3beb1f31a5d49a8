"""Reports of the last run per edition: Markdown, JUnit XML, HTML and JSON; the maintainer's report.

Markdown is for people reading the repository, JUnit XML for CI, HTML for a
browser, JSON so `reglab report` can re-render the others later. A module per
thing written:

- `files`: `write_reports` (EDITION.md, .xml, .html, .json at once) and `load_result(s)`.
- `markdown`, `html`: one edition's run in that format.
- `junit`: JUnit XML of an edition's run, and of a class's gradebook (a suite per student).
- `readme`: the README's results table between its markers.
- `maintainer`: both editions side by side per step, and the check of the tutorial's text.
- `text`: what every format says the same way (durations, cleaned tool output, causes, bridges).
"""
