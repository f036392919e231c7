"""The request pipeline: parse → resolve → decide → admit → forward → relay → settle → observe, one stage a module (``pipeline.py`` lists them), sharing one ``Exchange``."""
