//! Greedy search (Hugging Face `_sample` with `do_sample=False`): at each
//! step the processed logits' argmax; a row stops at EOS or when the sequence
//! (start token included) reaches max_length. Finished rows leave the batch
//! (their KV-cache rows are dropped), which does not change the others.

use crate::cpu::softmax::log_softmax_in_place;
use crate::error::Result;
use crate::model::backend::Backend;
use crate::model::encoder::EncoderOutput;
use crate::model::generation::GenerationConfig;
use crate::model::marian::MarianModel;
use crate::model::search::processors::Processors;
use crate::model::search::{argmax, check_scores, Hypothesis};

pub(crate) fn greedy<B: Backend>(
    model: &MarianModel<B>,
    enc: &EncoderOutput<B::Tensor>,
    gen: &GenerationConfig,
    cap: usize,
) -> Result<Vec<Vec<Hypothesis>>> {
    let n = enc.lengths.len();
    let vocab = model.config.target_vocab_size();
    let proc = Processors::new(gen);
    let start = gen.decoder_start_token_id;
    // seqs include the start token, as Hugging Face's input_ids.
    let mut seqs: Vec<Vec<u32>> = vec![vec![start]; n];
    let mut scores = vec![0.0f32; n];
    let mut active: Vec<usize> = (0..n).collect();
    let mut state = model.start_decoder(enc, &active, cap)?;
    let mut ids = vec![start; n];
    let mut row_buf = vec![0.0f32; vocab];
    while !active.is_empty() {
        let logits = model
            .backend
            .download(&model.decode_step(&mut state, &ids, 1)?)?;
        let mut keep = Vec::with_capacity(active.len());
        for (r, &item) in active.iter().enumerate() {
            let row = &logits[r * vocab..][..vocab];
            let step = seqs[item].len() - 1;
            // A NaN anywhere (even at a token the processors mask) would
            // make the score NaN: fail rather than emit a meaningless result.
            check_scores(row, step, r)?;
            row_buf.copy_from_slice(row);
            proc.apply(&seqs[item], &mut row_buf);
            let tok = argmax(&row_buf, step, r)?;
            // Score with the model's own log-probabilities.
            row_buf.copy_from_slice(row);
            log_softmax_in_place(&mut row_buf);
            scores[item] += row_buf[tok];
            let tok = tok as u32;
            seqs[item].push(tok);
            let done = proc.is_eos(tok) || seqs[item].len() >= proc.max_length();
            if !done {
                keep.push(r);
            }
        }
        active = keep.iter().map(|&r| active[r]).collect();
        if active.is_empty() {
            break;
        }
        model.reorder_rows(&mut state, &keep)?;
        ids = active
            .iter()
            .map(|&i| *seqs[i].last().unwrap_or(&start))
            .collect();
    }
    Ok(seqs
        .into_iter()
        .zip(scores)
        .map(|(s, score)| {
            vec![Hypothesis {
                ids: s[1..].to_vec(),
                score,
            }]
        })
        .collect())
}
