"""The language-model side: the GPT (nanoGPT style), its tokenizers, heads, the chat template, the ladder's rungs."""
