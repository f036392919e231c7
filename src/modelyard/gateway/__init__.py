"""The request pipeline: parse, resolve, decide, admit, forward, relay, settle, observe; one stage a module
(``pipeline.py`` lists them), all sharing one ``Exchange``. No database, no blocking I/O."""
