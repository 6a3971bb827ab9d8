"""The operator's console: what the ``goldthread`` command line computes and prints, kept out of ``cli``.

``cli`` parses arguments and calls one function here or in the library per command; these modules hold the
logic a command needs beyond the library (``status``, ``letters``, ``checks``, ``plan``) and the presentation
(``output``: rich tables for people, one JSON shape per command for scripts).
"""
