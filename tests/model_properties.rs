//! Model-level properties over random small checkpoints (proptest): a
//! sentence in a batch equals the sentence alone (encoder states,
//! teacher-forced logits, greedy and beam n-best), and step-by-step decoding
//! with the KV cache equals one full causal pass; on the reference backend
//! and on the fast CPU backend (whose GEMM keeps each output a fixed-order
//! reduction, so batch = alone holds for it too, with 2 worker threads).

mod common_model;

use common_model::{assert_close, Rng, Tiny, EOS};
use proptest::prelude::*;
use transformer_kernels::cpu::Cpu;
use transformer_kernels::fast_cpu::FastCpu;
use transformer_kernels::model::{Backend, GenerationConfig, MarianModel};

/// Same f32 maths, different batch composition or chunking (CASES A3: 1e-6).
const SAME_MATHS_ABS: f32 = 1e-6;
const SAME_MATHS_REL: f32 = 1e-6;

fn tiny_for(shape: u8) -> Tiny {
    match shape % 3 {
        0 => Tiny::default(),
        1 => Tiny {
            d_model: 15,
            heads: 3,
            ffn: 7,
            activation: "gelu",
            scale_embedding: false,
            ..Tiny::default()
        },
        _ => Tiny {
            d_model: 8,
            heads: 1,
            ffn: 16,
            encoder_layers: 1,
            decoder_layers: 3,
            activation: "relu",
            ..Tiny::default()
        },
    }
}

fn random_sources(rng: &mut Rng, vocab: usize, lens: &[usize]) -> Vec<Vec<u32>> {
    lens.iter()
        .map(|&n| {
            let mut s: Vec<u32> = (0..n)
                .map(|_| 1 + rng.below(vocab as u64 - 2) as u32)
                .collect();
            s.push(EOS);
            s
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn batch_equals_alone(shape in any::<u8>(), seed in any::<u64>(), lens in proptest::collection::vec(0usize..12, 2..4), beams in 1usize..4) {
        batch_equals_alone_on(Cpu, shape, seed, &lens, beams)?;
        batch_equals_alone_on(FastCpu::new(2).unwrap(), shape, seed, &lens, beams)?;
    }

    #[test]
    fn step_by_step_equals_full_pass(shape in any::<u8>(), seed in any::<u64>(), src_len in 0usize..10, t in 1usize..9, chunk in 1usize..4) {
        step_by_step_on(Cpu, shape, seed, src_len, t, chunk);
        step_by_step_on(FastCpu::new(2).unwrap(), shape, seed, src_len, t, chunk);
    }
}

fn batch_equals_alone_on<B: Backend>(
    backend: B,
    shape: u8,
    seed: u64,
    lens: &[usize],
    beams: usize,
) -> Result<(), TestCaseError> {
    let tiny = tiny_for(shape);
    let dir = tempfile::tempdir().unwrap();
    tiny.write(dir.path(), seed);
    let model = MarianModel::load(backend, dir.path()).unwrap();
    let name = model.backend().name();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let srcs = random_sources(&mut rng, tiny.vocab, lens);
    let dec: Vec<Vec<u32>> = lens
        .iter()
        .map(|&n| {
            let mut d = vec![tiny.pad()];
            d.extend((0..n % 5 + 1).map(|_| 1 + rng.below(tiny.vocab as u64 - 2) as u32));
            d
        })
        .collect();
    let mut gen = GenerationConfig::defaults_for(model.config());
    gen.bad_words_ids = vec![vec![tiny.pad()]];
    gen.forced_eos_token_id = vec![EOS];
    gen.max_length = 10;
    gen.num_beams = beams;
    gen.num_return_sequences = beams;
    let h = model.encoder_hidden_states(&srcs).unwrap();
    let l = model.decoder_logits(&srcs, &dec).unwrap();
    let g = model.generate(&srcs, &gen).unwrap();
    for i in 0..srcs.len() {
        let one = std::slice::from_ref(&srcs[i]);
        assert_close(
            &format!("{name}: encoder states {i}"),
            &h[i],
            &model.encoder_hidden_states(one).unwrap()[0],
            SAME_MATHS_ABS,
            SAME_MATHS_REL,
        );
        let alone = model
            .decoder_logits(one, std::slice::from_ref(&dec[i]))
            .unwrap();
        assert_close(
            &format!("{name}: logits {i}"),
            &l[i],
            &alone[0],
            SAME_MATHS_ABS,
            SAME_MATHS_REL,
        );
        let alone = model.generate(one, &gen).unwrap();
        prop_assert_eq!(
            g[i].iter().map(|x| &x.ids).collect::<Vec<_>>(),
            alone[0].iter().map(|x| &x.ids).collect::<Vec<_>>(),
            "{}: source {}",
            name,
            i
        );
    }
    Ok(())
}

fn step_by_step_on<B: Backend>(
    backend: B,
    shape: u8,
    seed: u64,
    src_len: usize,
    t: usize,
    chunk: usize,
) {
    let tiny = tiny_for(shape);
    let dir = tempfile::tempdir().unwrap();
    tiny.write(dir.path(), seed);
    let model = MarianModel::load(backend, dir.path()).unwrap();
    let name = model.backend().name();
    let mut rng = Rng::new(seed ^ 0xdec);
    let srcs = random_sources(&mut rng, tiny.vocab, &[src_len]);
    let mut dec = vec![tiny.pad()];
    dec.extend((1..t).map(|_| 1 + rng.below(tiny.vocab as u64 - 2) as u32));
    let full = model
        .decoder_logits(&srcs, std::slice::from_ref(&dec))
        .unwrap()
        .remove(0);
    let enc = model.encode(&srcs).unwrap();
    let mut state = model.start_decoder(&enc, &[0], 1).unwrap();
    let v = tiny.vocab;
    let mut p = 0;
    while p < t {
        let c = chunk.min(t - p);
        let logits = model
            .backend()
            .download(&model.decode_step(&mut state, &dec[p..p + c], c).unwrap())
            .unwrap();
        assert_close(
            &format!("{name}: positions {p}..{}", p + c),
            &logits,
            &full[p * v..(p + c) * v],
            SAME_MATHS_ABS,
            SAME_MATHS_REL,
        );
        p += c;
    }
}
