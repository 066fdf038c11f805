//! SentencePiece's text normalizer, as `normalizer.cc` (sentencepiece 0.2)
//! applies it before encoding: the precompiled character map (nmt_nfkc by
//! default: NFKC plus removal of control characters), whitespace escaping to
//! '▁', removal of leading, trailing and repeated whitespace, and the dummy
//! prefix.
//!
//! The precompiled map is `<u32 LE trie size><Darts-clone double array><NUL
//! separated replacement strings>`; at each position the longest rule that
//! matches a prefix of the input wins; with no rule, one UTF-8 character is
//! copied (a malformed byte becomes U+FFFD, consuming one byte).

use super::proto::NormalizerSpec;

/// The meta symbol that stands for a space in pieces (U+2581).
pub(crate) const SPACE_SYMBOL: &str = "\u{2581}";

/// A read-only Darts-clone double array (the format of `darts.h`), one
/// little-endian `u32` unit per node.
#[derive(Debug, Clone)]
struct DoubleArray {
    units: Vec<u32>,
}

impl DoubleArray {
    fn has_leaf(unit: u32) -> bool {
        (unit >> 8) & 1 == 1
    }
    fn value(unit: u32) -> u32 {
        unit & ((1 << 31) - 1)
    }
    fn label(unit: u32) -> u32 {
        unit & ((1 << 31) | 0xff)
    }
    fn offset(unit: u32) -> usize {
        ((unit >> 10) << ((unit & (1 << 9)) >> 6)) as usize
    }

    /// The longest key that is a prefix of `key`: `(length, value)`.
    /// A unit index outside the array (a corrupt map) ends the search.
    fn longest_prefix(&self, key: &[u8]) -> Option<(usize, u32)> {
        let mut best = None;
        let mut node = Self::offset(*self.units.first()?);
        for (i, &b) in key.iter().enumerate() {
            node ^= usize::from(b);
            let unit = *self.units.get(node)?;
            if Self::label(unit) != u32::from(b) {
                return best;
            }
            node ^= Self::offset(unit);
            if Self::has_leaf(unit) {
                let leaf = *self.units.get(node)?;
                best = Some((i + 1, Self::value(leaf)));
            }
        }
        best
    }
}

/// A normalizer built from a [`NormalizerSpec`].
#[derive(Debug, Clone)]
pub(crate) struct Normalizer {
    trie: Option<DoubleArray>,
    /// NUL-separated replacement strings that trie values index into.
    replacements: Vec<u8>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    treat_whitespace_as_suffix: bool,
    /// User-defined symbols pass through unnormalized (longest match first).
    user_defined: Vec<String>,
}

impl Normalizer {
    /// Builds the normalizer; an inconsistent charsmap is an error (message
    /// without the file name, the caller adds it).
    pub(crate) fn new(
        spec: &NormalizerSpec,
        treat_whitespace_as_suffix: bool,
        user_defined: Vec<String>,
    ) -> Result<Self, String> {
        let (trie, replacements) = if spec.precompiled_charsmap.is_empty() {
            (None, Vec::new())
        } else {
            let blob = &spec.precompiled_charsmap;
            let size_bytes: [u8; 4] = blob
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or("precompiled_charsmap is shorter than its 4-byte header")?;
            let trie_size = u32::from_le_bytes(size_bytes) as usize;
            if !trie_size.is_multiple_of(4) || trie_size > blob.len() - 4 {
                return Err(format!(
                    "precompiled_charsmap: trie size {trie_size} does not fit the {}-byte map",
                    blob.len()
                ));
            }
            let trie_bytes = &blob[4..4 + trie_size];
            let units = trie_bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (Some(DoubleArray { units }), blob[4 + trie_size..].to_vec())
        };
        let mut user_defined = user_defined;
        user_defined.retain(|s| !s.is_empty());
        Ok(Normalizer {
            trie,
            replacements,
            add_dummy_prefix: spec.add_dummy_prefix,
            remove_extra_whitespaces: spec.remove_extra_whitespaces,
            escape_whitespaces: spec.escape_whitespaces,
            treat_whitespace_as_suffix,
            user_defined,
        })
    }

    /// `NormalizePrefix`: the replacement for the start of `input` and the
    /// number of input bytes it stands for.
    fn normalize_prefix<'a>(&'a self, input: &'a [u8]) -> Result<(&'a [u8], usize), String> {
        if let Some(len) = self
            .user_defined
            .iter()
            .filter(|s| input.starts_with(s.as_bytes()))
            .map(|s| s.len())
            .max()
        {
            return Ok((&input[..len], len));
        }
        if let Some((len, value)) = self.trie.as_ref().and_then(|t| t.longest_prefix(input)) {
            let start = value as usize;
            let rest = self.replacements.get(start..).ok_or_else(|| {
                format!("precompiled_charsmap: replacement offset {start} is out of range")
            })?;
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            return Ok((&rest[..end], len));
        }
        let len = valid_utf8_char_len(input);
        if len == 0 {
            // Malformed UTF-8: U+FFFD, consuming one byte (as sentencepiece).
            Ok(("\u{fffd}".as_bytes(), 1))
        } else {
            Ok((&input[..len], len))
        }
    }

    /// `Normalizer::Normalize`: the normalized text, with spaces as '▁'.
    /// Empty or all-whitespace input gives an empty string.
    pub(crate) fn normalize(&self, input: &str) -> Result<String, String> {
        let space: &[u8] = if self.escape_whitespaces {
            SPACE_SYMBOL.as_bytes()
        } else {
            b" "
        };
        let mut input = input.as_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(input.len() * 3);
        if input.is_empty() {
            return Ok(String::new());
        }
        if self.remove_extra_whitespaces {
            while !input.is_empty() {
                let (text, consumed) = self.normalize_prefix(input)?;
                if text != b" " {
                    break;
                }
                input = &input[consumed..];
            }
        }
        if input.is_empty() {
            return Ok(String::new());
        }
        if !self.treat_whitespace_as_suffix && self.add_dummy_prefix {
            out.extend_from_slice(space);
        }
        let mut is_prev_space = self.remove_extra_whitespaces;
        while !input.is_empty() {
            let (mut text, consumed) = self.normalize_prefix(input)?;
            if is_prev_space && self.remove_extra_whitespaces {
                while let Some(rest) = text.strip_prefix(b" ") {
                    text = rest;
                }
            }
            if !text.is_empty() {
                for &b in text {
                    if self.escape_whitespaces && b == b' ' {
                        out.extend_from_slice(SPACE_SYMBOL.as_bytes());
                    } else {
                        out.push(b);
                    }
                }
                is_prev_space = text.ends_with(b" ");
            }
            input = &input[consumed..];
            if !self.remove_extra_whitespaces {
                is_prev_space = false;
            }
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        if self.treat_whitespace_as_suffix && self.add_dummy_prefix {
            out.extend_from_slice(space);
        }
        // Replacement strings from a corrupt map may cut a character in two.
        String::from_utf8(out)
            .map_err(|_| "precompiled_charsmap produced invalid UTF-8".to_string())
    }
}

/// Length of the valid UTF-8 character at the start of `s`, 0 if malformed
/// (sentencepiece's `IsValidDecodeUTF8`: shortest form, no surrogates, at most
/// U+10FFFF).
pub(crate) fn valid_utf8_char_len(s: &[u8]) -> usize {
    let n = match s.first() {
        None => return 0,
        Some(&b) if b < 0x80 => return 1,
        Some(&b) if b & 0xe0 == 0xc0 => 2,
        Some(&b) if b & 0xf0 == 0xe0 => 3,
        Some(&b) if b & 0xf8 == 0xf0 => 4,
        Some(_) => return 0,
    };
    match s.get(..n).map(std::str::from_utf8) {
        Some(Ok(_)) => n,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Normalizer {
        Normalizer::new(&NormalizerSpec::default(), false, Vec::new()).expect("identity")
    }

    #[test]
    fn whitespace_is_collapsed_escaped_and_prefixed() {
        let n = plain();
        assert_eq!(n.normalize("  a  b ").unwrap(), "▁a▁b");
        assert_eq!(n.normalize("").unwrap(), "");
        assert_eq!(n.normalize("   ").unwrap(), "");
    }

    #[test]
    fn corrupt_charsmap_is_an_error_not_a_panic() {
        let spec = NormalizerSpec {
            precompiled_charsmap: vec![0xff, 0xff, 0, 0, 1, 2],
            ..NormalizerSpec::default()
        };
        assert!(Normalizer::new(&spec, false, Vec::new()).is_err());
        // A trie whose root points outside the array just stops matching.
        let spec = NormalizerSpec {
            precompiled_charsmap: vec![4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, b'x', 0],
            ..NormalizerSpec::default()
        };
        let n = Normalizer::new(&spec, false, Vec::new()).expect("structurally valid");
        assert_eq!(n.normalize("ab").unwrap(), "▁ab");
    }
}
