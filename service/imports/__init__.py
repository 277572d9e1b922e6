"""Knowledge imported from where it lives: a help-center URL, a folder of documents, an articles export.

One module per step: `fetching` (the only outbound HTTP for imports), `crawling` (robots.txt, sitemaps,
links), `extraction` (main content of HTML and PDF), `splitting` (sections at headings), `sources` (folders
and export files), `storing` (the database), `syncing` (import, sync, list, remove) and `schedule` (the
service's periodic sync under a lease).
"""
