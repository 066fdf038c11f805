//! The parts of SentencePiece's `ModelProto` (a `.spm` / `.model` file) that
//! encoding and decoding need, read straight from the protobuf wire format.
//!
//! Hand-written so that the crate builds with cargo alone (no protoc, no
//! generated code). Field numbers and defaults are those of
//! `sentencepiece_model.proto` (sentencepiece 0.2): unknown fields are skipped,
//! as any protobuf reader does, so newer files still load.

/// One vocabulary entry (`ModelProto.SentencePiece`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Piece {
    /// The piece text (field 1), with '▁' (U+2581) for a space.
    pub piece: String,
    /// Log-probability for unigram, merge rank for BPE (field 2).
    pub score: f32,
    /// Field 3.
    pub kind: PieceType,
}

/// `ModelProto.SentencePiece.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_wire(v: u64) -> Option<Self> {
        Some(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }
}

/// `TrainerSpec.ModelType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelType {
    Unigram,
    Bpe,
    Word,
    Char,
}

/// The `TrainerSpec` fields that matter at encode/decode time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrainerSpec {
    /// Field 3, default UNIGRAM.
    pub model_type: ModelType,
    /// Field 24, default false.
    pub treat_whitespace_as_suffix: bool,
    /// Field 35, default false: unknown characters become `<0xXX>` byte pieces.
    pub byte_fallback: bool,
    /// Field 44, default " ⁇ ": what `<unk>` decodes to.
    pub unk_surface: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec {
            model_type: ModelType::Unigram,
            treat_whitespace_as_suffix: false,
            byte_fallback: false,
            unk_surface: " \u{2047} ".to_string(),
        }
    }
}

/// `NormalizerSpec` (also used for the denormalizer).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NormalizerSpec {
    /// Field 1 (e.g. "nmt_nfkc"); informative only.
    pub name: String,
    /// Field 2: the compiled rules (Darts double-array + replacement strings).
    pub precompiled_charsmap: Vec<u8>,
    /// Field 3, default true.
    pub add_dummy_prefix: bool,
    /// Field 4, default true.
    pub remove_extra_whitespaces: bool,
    /// Field 5, default true.
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// `ModelProto`: pieces (1), trainer_spec (2), normalizer_spec (3),
/// denormalizer_spec (5).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ModelProto {
    pub pieces: Vec<Piece>,
    pub trainer_spec: TrainerSpec,
    pub normalizer_spec: NormalizerSpec,
    pub denormalizer_spec: Option<NormalizerSpec>,
}

/// A field's payload on the wire.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads (field number, value) pairs from one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| format!("truncated varint at byte {}", self.pos))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "field of {n} bytes at byte {} runs past the end ({} bytes)",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field, or `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| "length does not fit in memory".to_string())?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(format!("unsupported wire type {w} for field {field}")),
        };
        Ok(Some((field, value)))
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not valid UTF-8"))
}

fn parse_piece(buf: &[u8]) -> Result<Piece, String> {
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    let mut r = Reader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match (field, v) {
            (1, Value::Bytes(b)) => p.piece = utf8(b, "piece")?,
            (2, Value::Fixed32(bits)) => p.score = f32::from_bits(bits),
            (3, Value::Varint(t)) => {
                p.kind = PieceType::from_wire(t)
                    .ok_or_else(|| format!("piece {:?}: unknown piece type {t}", p.piece))?
            }
            (1..=3, _) => return Err(format!("piece field {field} has the wrong wire type")),
            _ => {}
        }
    }
    Ok(p)
}

fn parse_trainer_spec(buf: &[u8]) -> Result<TrainerSpec, String> {
    let mut t = TrainerSpec::default();
    let mut r = Reader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match (field, v) {
            (3, Value::Varint(m)) => {
                t.model_type = match m {
                    1 => ModelType::Unigram,
                    2 => ModelType::Bpe,
                    3 => ModelType::Word,
                    4 => ModelType::Char,
                    _ => return Err(format!("unknown model_type {m}")),
                }
            }
            (24, Value::Varint(b)) => t.treat_whitespace_as_suffix = b != 0,
            (35, Value::Varint(b)) => t.byte_fallback = b != 0,
            (44, Value::Bytes(b)) => t.unk_surface = utf8(b, "unk_surface")?,
            (3 | 24 | 35 | 44, _) => {
                return Err(format!(
                    "trainer_spec field {field} has the wrong wire type"
                ))
            }
            _ => {}
        }
    }
    Ok(t)
}

fn parse_normalizer_spec(buf: &[u8]) -> Result<NormalizerSpec, String> {
    let mut n = NormalizerSpec::default();
    let mut r = Reader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match (field, v) {
            (1, Value::Bytes(b)) => n.name = utf8(b, "normalizer name")?,
            (2, Value::Bytes(b)) => n.precompiled_charsmap = b.to_vec(),
            (3, Value::Varint(b)) => n.add_dummy_prefix = b != 0,
            (4, Value::Varint(b)) => n.remove_extra_whitespaces = b != 0,
            (5, Value::Varint(b)) => n.escape_whitespaces = b != 0,
            (1..=5, _) => {
                return Err(format!(
                    "normalizer_spec field {field} has the wrong wire type"
                ))
            }
            _ => {}
        }
    }
    Ok(n)
}

/// Parses a serialized `ModelProto`. Errors say which field is malformed.
pub(crate) fn parse_model_proto(buf: &[u8]) -> Result<ModelProto, String> {
    let mut m = ModelProto::default();
    let mut r = Reader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match (field, v) {
            (1, Value::Bytes(b)) => {
                let index = m.pieces.len();
                m.pieces
                    .push(parse_piece(b).map_err(|e| format!("piece {index}: {e}"))?);
            }
            (2, Value::Bytes(b)) => {
                m.trainer_spec = parse_trainer_spec(b).map_err(|e| format!("trainer_spec: {e}"))?
            }
            (3, Value::Bytes(b)) => {
                m.normalizer_spec =
                    parse_normalizer_spec(b).map_err(|e| format!("normalizer_spec: {e}"))?
            }
            (5, Value::Bytes(b)) => {
                m.denormalizer_spec =
                    Some(parse_normalizer_spec(b).map_err(|e| format!("denormalizer_spec: {e}"))?)
            }
            (1 | 2 | 3 | 5, _) => {
                return Err(format!("ModelProto field {field} has the wrong wire type"))
            }
            _ => {}
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(field: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    #[test]
    fn parses_pieces_defaults_and_skips_unknown_fields() {
        let mut piece = Vec::new();
        bytes_field(1, "▁a".as_bytes(), &mut piece);
        varint(2 << 3 | 5, &mut piece);
        piece.extend_from_slice(&(-2.5f32).to_le_bytes());
        varint(99 << 3, &mut piece); // unknown varint field
        varint(7, &mut piece);
        let mut unk = Vec::new();
        bytes_field(1, b"<unk>", &mut unk);
        varint(3 << 3, &mut unk);
        varint(2, &mut unk);
        let mut model = Vec::new();
        bytes_field(1, &unk, &mut model);
        bytes_field(1, &piece, &mut model);
        let m = parse_model_proto(&model).expect("valid proto");
        assert_eq!(m.pieces.len(), 2);
        assert_eq!(m.pieces[0].kind, PieceType::Unknown);
        assert_eq!(m.pieces[1].piece, "▁a");
        assert_eq!(m.pieces[1].score, -2.5);
        assert_eq!(m.pieces[1].kind, PieceType::Normal);
        assert!(m.normalizer_spec.add_dummy_prefix);
        assert_eq!(m.trainer_spec.model_type, ModelType::Unigram);
    }

    #[test]
    fn truncation_is_an_error() {
        let mut model = Vec::new();
        bytes_field(1, b"\x0a\x05<unk>", &mut model);
        model.truncate(model.len() - 2);
        assert!(parse_model_proto(&model).is_err());
        assert!(parse_model_proto(&[0xff; 11]).is_err());
    }
}
