"""Models: loading (Hub ids, local dirs, GGUF, run dirs), the attention and loss kernels of training, generation settings, memory estimates."""
