# Torch-free layers: support code, then file formats, tokenizers and datasets (bytes on disk,
# no tensors). lathe_support and lathe_formats, the sanitized format tests and the fuzz
# harnesses (fuzz/) all build these.
set(LATHE_SUPPORT_SOURCES
  support/allocator.cpp
  support/errors.cpp
  support/atomic_file.cpp
  support/file_output.cpp
  support/mapped_file.cpp
  support/temporary_file.cpp
  support/process_stats.cpp
  support/blas_core.cpp
  support/bounded_file.cpp
  support/sha256.cpp
  support/source_location.cpp
  support/svg_heatmap.cpp
  support/progress.cpp)
set(LATHE_FORMAT_SOURCES
  formats/safetensors.cpp
  formats/hf_config.cpp
  formats/zip_directory.cpp
  formats/pickle.cpp
  formats/sentencepiece_model.cpp
  formats/tokenizer.cpp
  formats/dataset.cpp)
