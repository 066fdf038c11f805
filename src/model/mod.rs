//! The model: config.json, model.safetensors, the Backend trait, encoder, decoder, KV cache, search.
