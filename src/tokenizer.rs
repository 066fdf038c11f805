//! SentencePiece (source.spm / target.spm) + vocab.json, as MarianTokenizer uses them.
