//! A SentencePiece unigram model: text -> pieces and pieces -> text, with the
//! results of `SentencePieceProcessor::Encode` / `DecodePieces` in
//! sentencepiece 0.2 (the library MarianTokenizer calls).
//!
//! Encoding is `unigram::Model::EncodeOptimized`: normalize, then a Viterbi
//! pass over byte positions that keeps the best path ending at each
//! position; every character that no single-character piece covers gets an
//! `<unk>` node scored `min_score - 10`. Runs of unknown pieces are then
//! merged into one piece (or split into `<0xXX>` byte pieces when the model
//! has byte fallback), as `PopulateSentencePieceText` does.

use std::collections::HashMap;

use super::normalizer::{valid_utf8_char_len, Normalizer, SPACE_SYMBOL};
use super::proto::{parse_model_proto, ModelType, PieceType};

/// sentencepiece's `kUnkPenalty`: an unknown character costs this much more
/// than the least likely piece.
const UNK_PENALTY: f32 = 10.0;

/// One loaded `.spm` model. Messages of its errors do not name the file: the
/// caller, which knows it, does.
#[derive(Debug, Clone)]
pub(crate) struct SentencePiece {
    pieces: Vec<(String, f32, PieceType)>,
    /// Every piece to its id (pieces are unique, checked at load).
    piece_to_id: HashMap<String, u32>,
    unk_id: u32,
    /// Over NORMAL pieces only, as `unigram::Model` computes them.
    min_score: f32,
    max_score: f32,
    /// The longest encodable piece in bytes: bounds the lattice's look-ahead.
    max_piece_bytes: usize,
    byte_fallback: bool,
    unk_surface: String,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    normalizer: Normalizer,
    denormalizer: Option<Normalizer>,
}

/// The best path ending at one byte position (`BestPathNode`).
#[derive(Clone, Copy)]
struct BestPath {
    id: u32,
    score: f32,
    starts_at: Option<usize>,
}

impl SentencePiece {
    /// Loads a serialized `ModelProto`.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let proto = parse_model_proto(bytes)?;
        if proto.trainer_spec.model_type != ModelType::Unigram {
            return Err(format!(
                "model_type {:?} is not supported (only unigram, which Marian uses)",
                proto.trainer_spec.model_type
            ));
        }
        if proto.trainer_spec.treat_whitespace_as_suffix {
            return Err("treat_whitespace_as_suffix is not supported".into());
        }
        if proto.pieces.is_empty() {
            return Err("the model has no pieces".into());
        }
        let mut piece_to_id = HashMap::with_capacity(proto.pieces.len());
        let mut unk_id = None;
        let mut user_defined = Vec::new();
        // C++ starts from FLT_MAX / FLT_MIN (the smallest positive float, so
        // max_score is never below it) and keeps them when there is no NORMAL piece.
        let (mut min_score, mut max_score) = (f32::MAX, f32::MIN_POSITIVE);
        let mut max_piece_bytes = 0;
        for (i, p) in proto.pieces.iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| "too many pieces".to_string())?;
            if p.piece.is_empty() {
                return Err(format!("piece {i} is empty"));
            }
            if piece_to_id.insert(p.piece.clone(), id).is_some() {
                return Err(format!("piece {:?} is defined twice", p.piece));
            }
            match p.kind {
                PieceType::Unknown if unk_id.is_some() => {
                    return Err("more than one <unk> piece".into())
                }
                PieceType::Unknown => unk_id = Some(id),
                PieceType::Normal => {
                    min_score = min_score.min(p.score);
                    max_score = max_score.max(p.score);
                }
                PieceType::UserDefined => user_defined.push(p.piece.clone()),
                PieceType::Byte if piece_to_byte(&p.piece).is_none() => {
                    return Err(format!(
                        "byte piece {:?} is not of the form <0xXX>",
                        p.piece
                    ))
                }
                _ => {}
            }
            if matches!(
                p.kind,
                PieceType::Normal | PieceType::UserDefined | PieceType::Unused
            ) {
                max_piece_bytes = max_piece_bytes.max(p.piece.len());
            }
        }
        let unk_id = unk_id.ok_or("the model has no <unk> piece")?;
        let normalizer = Normalizer::new(&proto.normalizer_spec, false, user_defined)?;
        let denormalizer = match &proto.denormalizer_spec {
            Some(spec) if !spec.precompiled_charsmap.is_empty() => {
                Some(Normalizer::new(spec, false, Vec::new())?)
            }
            _ => None,
        };
        Ok(SentencePiece {
            pieces: proto
                .pieces
                .into_iter()
                .map(|p| (p.piece, p.score, p.kind))
                .collect(),
            piece_to_id,
            unk_id,
            min_score,
            max_score,
            max_piece_bytes,
            byte_fallback: proto.trainer_spec.byte_fallback,
            unk_surface: proto.trainer_spec.unk_surface,
            add_dummy_prefix: proto.normalizer_spec.add_dummy_prefix,
            remove_extra_whitespaces: proto.normalizer_spec.remove_extra_whitespaces,
            normalizer,
            denormalizer,
        })
    }

    /// Number of pieces (`GetPieceSize`).
    pub(crate) fn len(&self) -> usize {
        self.pieces.len()
    }

    /// `IdToPiece`.
    pub(crate) fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(|p| p.0.as_str())
    }

    fn kind(&self, id: u32) -> PieceType {
        self.pieces
            .get(id as usize)
            .map_or(PieceType::Unknown, |p| p.2)
    }

    /// `PieceToId`: an unknown piece maps to the `<unk>` id.
    fn piece_to_id(&self, piece: &str) -> u32 {
        self.piece_to_id.get(piece).copied().unwrap_or(self.unk_id)
    }

    /// `encode(text, out_type=str)`: the pieces of `text` (normalized text;
    /// an unknown run is one piece holding its characters).
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<String>, String> {
        let normalized = self.normalizer.normalize(text)?;
        let mut out: Vec<String> = Vec::new();
        let mut prev_unk = false;
        for (piece, id) in self.viterbi(&normalized)? {
            let is_unk = id == self.unk_id;
            if is_unk && self.byte_fallback {
                out.extend(piece.bytes().map(|b| format!("<0x{b:02X}>")));
            } else if is_unk && prev_unk {
                if let Some(last) = out.last_mut() {
                    last.push_str(piece);
                }
            } else {
                out.push(piece.to_string());
            }
            prev_unk = is_unk;
        }
        Ok(out)
    }

    /// `EncodeOptimized`: the best segmentation of normalized text as
    /// (piece, id) pairs. Sums follow the C++ types: a piece's candidate score
    /// is a double sum compared against the stored float; an unknown's is a
    /// float sum.
    fn viterbi<'a>(&self, normalized: &'a str) -> Result<Vec<(&'a str, u32)>, String> {
        let size = normalized.len();
        if size == 0 {
            return Ok(Vec::new());
        }
        let unk_score = self.min_score - UNK_PENALTY;
        let mut best = vec![
            BestPath {
                id: self.unk_id,
                score: 0.0,
                starts_at: None,
            };
            size + 1
        ];
        let mut starts_at = 0;
        while starts_at < size {
            let base = best[starts_at].score;
            let mblen = valid_utf8_char_len(&normalized.as_bytes()[starts_at..]).max(1);
            let mut has_single_node = false;
            let last = size.min(starts_at + self.max_piece_bytes);
            for (end, target) in best
                .iter_mut()
                .enumerate()
                .take(last + 1)
                .skip(starts_at + 1)
            {
                let Some(candidate) = normalized.get(starts_at..end) else {
                    continue; // not a character boundary
                };
                let Some(&id) = self.piece_to_id.get(candidate) else {
                    continue;
                };
                let length = end - starts_at;
                let score = match self.kind(id) {
                    PieceType::Normal => f64::from(self.pieces[id as usize].1),
                    PieceType::UserDefined => f64::from(length as f32 * self.max_score) - 0.1,
                    _ => continue, // unused, control, byte, unk: not in the trie
                };
                let total = score + f64::from(base);
                if target.starts_at.is_none() || total > f64::from(target.score) {
                    *target = BestPath {
                        id,
                        score: total as f32,
                        starts_at: Some(starts_at),
                    };
                }
                if length == mblen {
                    has_single_node = true;
                }
            }
            if !has_single_node {
                let end = (starts_at + mblen).min(size);
                let total = unk_score + base;
                let target = &mut best[end];
                if target.starts_at.is_none() || total > target.score {
                    *target = BestPath {
                        id: self.unk_id,
                        score: total,
                        starts_at: Some(starts_at),
                    };
                }
            }
            starts_at += mblen;
        }
        let mut out = Vec::new();
        let mut ends_at = size;
        while ends_at > 0 {
            let node = best[ends_at];
            let start = node
                .starts_at
                .filter(|&s| s < ends_at)
                .ok_or("internal: broken Viterbi back-pointer")?;
            let piece = normalized
                .get(start..ends_at)
                .ok_or("internal: Viterbi piece is not on a character boundary")?;
            out.push((piece, node.id));
            ends_at = start;
        }
        out.reverse();
        Ok(out)
    }

    /// `DecodePieces`: pieces back to text. '▁' becomes a space; the first
    /// piece's leading '▁' (the dummy prefix) is dropped; control pieces
    /// vanish; `<unk>` becomes the model's unk_surface; a piece the model
    /// does not know is copied as is; `<0xXX>` runs are decoded as UTF-8
    /// (an invalid byte becomes U+FFFD).
    pub(crate) fn decode(&self, pieces: &[&str]) -> Result<String, String> {
        let mut text = String::new();
        let mut is_bos_ws = true;
        let mut bos_ws_seen = false;
        let mut bytes: Vec<u8> = Vec::new();
        for &piece in pieces {
            let id = self.piece_to_id(piece);
            if self.kind(id) == PieceType::Byte {
                bytes.push(piece_to_byte(piece).ok_or("internal: malformed byte piece")?);
                continue;
            }
            flush_bytes(&mut bytes, &mut text);
            if bos_ws_seen || !text.is_empty() {
                is_bos_ws = false;
            }
            let (surface, seen) = self.decode_piece(piece, id, is_bos_ws);
            bos_ws_seen = seen;
            text.push_str(&surface);
        }
        flush_bytes(&mut bytes, &mut text);
        match &self.denormalizer {
            Some(d) => d.normalize(&text),
            None => Ok(text),
        }
    }

    /// `DecodeSentencePiece`: one piece's surface and whether it consumed
    /// the beginning-of-sentence '▁'.
    fn decode_piece(&self, piece: &str, id: u32, is_bos_ws: bool) -> (String, bool) {
        match self.kind(id) {
            PieceType::Control => return (String::new(), false),
            PieceType::Unknown if self.id_to_piece(id) == Some(piece) => {
                return (self.unk_surface.clone(), false)
            }
            PieceType::Unknown => return (piece.to_string(), false),
            _ => {}
        }
        let mut piece = piece;
        let mut has_bos_ws = false;
        if is_bos_ws && (self.add_dummy_prefix || self.remove_extra_whitespaces) {
            if let Some(rest) = piece.strip_prefix(SPACE_SYMBOL) {
                piece = rest;
                has_bos_ws = true;
            }
            // With remove_extra_whitespaces every leading space is dropped.
            if self.remove_extra_whitespaces {
                has_bos_ws = false;
            }
        }
        (piece.replace(SPACE_SYMBOL, " "), has_bos_ws)
    }
}

/// Appends byte pieces decoded as UTF-8, U+FFFD for each invalid byte
/// (`ProcessBytePieces`), and clears them.
fn flush_bytes(bytes: &mut Vec<u8>, text: &mut String) {
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let n = valid_utf8_char_len(rest);
        if n == 0 {
            text.push('\u{fffd}');
            rest = &rest[1..];
        } else {
            text.push_str(std::str::from_utf8(&rest[..n]).unwrap_or("\u{fffd}"));
            rest = &rest[n..];
        }
    }
    bytes.clear();
}

/// `<0x41>` -> 0x41 (`PieceToByte`).
fn piece_to_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}
