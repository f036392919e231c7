"""Scripts run by the private vLLM environment's interpreter (torch, transformers, peft, gguf), never imported by
modelyard itself: they are started as files, so the gateway's environment needs none of their dependencies."""
