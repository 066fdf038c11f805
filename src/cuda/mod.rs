//! CUDA: device and module loading, `DeviceTensor`, one file per op wrapper.
