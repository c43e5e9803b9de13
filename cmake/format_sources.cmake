# Torch-free: file formats, tokenizers, datasets, support code. lathe_formats, the sanitized
# format tests and the fuzz harnesses (fuzz/) all build these.
set(LATHE_FORMAT_SOURCES
  support/allocator.cpp
  support/errors.cpp
  support/atomic_file.cpp
  support/mapped_file.cpp
  support/temporary_file.cpp
  support/process_stats.cpp
  support/blas_core.cpp
  support/bounded_file.cpp
  support/svg_heatmap.cpp
  support/progress.cpp
  formats/safetensors.cpp
  formats/hf_config.cpp
  formats/zip_directory.cpp
  formats/pickle.cpp
  formats/sentencepiece_model.cpp
  formats/tokenizer.cpp
  formats/dataset.cpp)
