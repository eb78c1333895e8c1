"""Reports people look at: self-contained HTML pages with inline SVG plots (gate reports, drill reports).

``page`` is the one module every report shares (the template environment, the page shell, the
plots); ``gates`` and ``drills`` turn a report's data into a page. Nothing here touches the network:
a page is one file that opens anywhere.
"""
