"""The language-model side's pure steps: corpus, training loop, pretraining, chat data and tools, RLHF, heads."""
