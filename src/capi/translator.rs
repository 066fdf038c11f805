//! `TkTranslator`: a Marian checkpoint translating batches of UTF-8
//! sentences (the library's [`crate::translator::Translator`]).

use std::ffi::{c_char, CStr, CString};
use std::path::Path;

use super::{guard, non_null, TkStatus};
use crate::translator::{TranslateOptions, Translator, TranslatorDevice};
use crate::{DType, Error};

/// A loaded checkpoint (opaque). Not for use from two threads at once.
pub struct TkTranslator {
    inner: Translator,
}

/// The translations of one call (opaque): strings owned by it.
pub struct TkTranslations {
    lines: Vec<CString>,
}

/// Options of [`tk_translate_batch`]; 0 keeps the checkpoint's setting
/// (beam, max_length) or the default (batch size 16).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TkTranslateOptions {
    /// Beam width (1 = greedy).
    pub beam_size: usize,
    /// Maximum decoder length including the start token.
    pub max_length: usize,
    /// Sentences per batch (sorted by length into batches).
    pub batch_size: usize,
}

/// A UTF-8 C string argument.
fn str_arg<'a>(p: *const c_char, what: &str) -> crate::Result<&'a str> {
    non_null(p, what)?;
    // SAFETY: non-null and, by the contract, NUL-terminated and alive.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|e| Error::invalid("c api", format!("{what} is not UTF-8: {e}")))
}

/// Loads the Hugging Face Marian checkpoint in `model_dir` on `device`
/// (`"cpu"` (every core), `"cpu:THREADS"`, `"reference"` (the plain CPU
/// reference), `"cuda"`, `"cuda:N"`, `"emu"` or `"auto"`) with storage
/// `dtype` (`"f32"`, `"f16"`, `"bf16"`, or NULL for the checkpoint's own
/// 16-bit dtype, else bf16; the CPU is f32) into `*out`.
///
/// # Safety
/// The strings are NUL-terminated (or `dtype` NULL); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn tk_translator_new(
    model_dir: *const c_char,
    device: *const c_char,
    dtype: *const c_char,
    out: *mut *mut TkTranslator,
) -> TkStatus {
    guard(|| {
        non_null(out, "out")?;
        let dir = str_arg(model_dir, "model_dir")?;
        let device: TranslatorDevice = str_arg(device, "device")?.parse()?;
        let dtype: Option<DType> = if dtype.is_null() {
            None
        } else {
            Some(str_arg(dtype, "dtype")?.parse()?)
        };
        let t = Box::new(TkTranslator {
            inner: Translator::new(Path::new(dir), device, dtype)?,
        });
        // SAFETY: `out` is non-null and writable by the contract.
        unsafe { *out = Box::into_raw(t) };
        Ok(())
    })
}

/// Releases a translator. NULL is allowed.
///
/// # Safety
/// `t` is NULL or a live handle from [`tk_translator_new`].
#[no_mangle]
pub unsafe extern "C" fn tk_translator_free(t: *mut TkTranslator) {
    if !t.is_null() {
        let _ = guard(|| {
            // SAFETY: a live handle, never used again.
            drop(unsafe { Box::from_raw(t) });
            Ok(())
        });
    }
}

/// Translates `count` UTF-8 sentences into `*out` (in order; a blank
/// sentence gives ""). `options` may be NULL (all defaults).
///
/// # Safety
/// `t` is a live handle; `sentences` points to `count` NUL-terminated
/// strings; `options` is NULL or readable; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn tk_translate_batch(
    t: *mut TkTranslator,
    sentences: *const *const c_char,
    count: usize,
    options: *const TkTranslateOptions,
    out: *mut *mut TkTranslations,
) -> TkStatus {
    guard(|| {
        non_null(t, "translator")?;
        non_null(out, "out")?;
        if count > 0 {
            non_null(sentences, "sentences")?;
        }
        // SAFETY: by the contract.
        let t = unsafe { &*t };
        let opts = if options.is_null() {
            TkTranslateOptions::default()
        } else {
            // SAFETY: non-null and readable by the contract.
            unsafe { *options }
        };
        let mut texts = Vec::with_capacity(count);
        for i in 0..count {
            // SAFETY: `sentences` holds `count` pointers (contract).
            let p = unsafe { *sentences.add(i) };
            texts.push(str_arg(p, &format!("sentences[{i}]"))?);
        }
        let nz = |v: usize| (v > 0).then_some(v);
        let lines = t.inner.translate(
            &texts,
            TranslateOptions {
                beam: nz(opts.beam_size),
                max_length: nz(opts.max_length),
                batch_size: nz(opts.batch_size),
            },
        )?;
        let lines = lines
            .into_iter()
            .map(|l| CString::new(l.replace('\0', " ")).unwrap_or_default())
            .collect();
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(Box::new(TkTranslations { lines })) };
        Ok(())
    })
}

/// Number of translations (0 for NULL).
///
/// # Safety
/// `r` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn tk_translations_count(r: *const TkTranslations) -> usize {
    if r.is_null() {
        return 0;
    }
    // SAFETY: a live handle by the contract.
    let r = unsafe { &*r };
    r.lines.len()
}

/// Translation `i` (UTF-8, owned by `r`), or NULL past the end.
///
/// # Safety
/// `r` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn tk_translations_get(r: *const TkTranslations, i: usize) -> *const c_char {
    if r.is_null() {
        return std::ptr::null();
    }
    // SAFETY: a live handle by the contract.
    let r = unsafe { &*r };
    r.lines.get(i).map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Releases translations. NULL is allowed.
///
/// # Safety
/// `r` is NULL or a live handle from [`tk_translate_batch`].
#[no_mangle]
pub unsafe extern "C" fn tk_translations_free(r: *mut TkTranslations) {
    if !r.is_null() {
        // SAFETY: a live handle, never used again.
        drop(unsafe { Box::from_raw(r) });
    }
}
