"""Evaluation: task suites run through the gateway, quantization quality reports, and promotion gates.

Everything that decides (scoring, statistics, gates) is a pure function over plain data; the runner, the
perplexity tool and the store are the only modules that touch the network, processes or the database.
"""
