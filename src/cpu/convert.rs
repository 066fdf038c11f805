//! Reference dtype conversion: widen to f32 (exact), round to the target
//! dtype with round-to-nearest-even (the `half` crate's `from_f32`).

use crate::Element;

/// `dst[i] = D::from_f32(src[i].to_f32())` for every element.
pub fn convert<S: Element, D: Element>(src: &[S]) -> Vec<D> {
    src.iter().map(|x| D::from_f32(x.to_f32())).collect()
}
