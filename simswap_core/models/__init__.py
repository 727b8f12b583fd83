"""Model files: what they are, where they are, how they are fetched, read safely and loaded.

    catalogue          the known files (ModelFile, CATALOGUE, ALIASES, RECOMMENDED, KINDS)
    find               search folders, find_model, the "missing file" message, fetch_command
    download           fetching URLs (mirrors, resume, checksums, zip members) and publishing downloads
    install            installing catalogue entries into a models folder, checking them, first-download records
    installer_cli      the installer's command line (``python install.py``)
    file_checks        the installer's format check of a download (torch/onnx/safetensors/zip), nothing unpickled
    model_file         the first check of any model file: a regular file of bounded size (no FIFO, device, loop)
    pickle_scan        a pickle's resource limits (size, opcodes, memo, nesting, expanded size), before unpickling
    zip_directory      a zip's central directory (limits, bombs, forgeries) and the torch.save record layout
    safetensors_header a .safetensors header (dtype names, shapes, offsets tiling the data) and its metadata
    safe_pickle        the allow-list unpickler (nothing from a file runs); tensors stay lazy, bounds-checked records
    pickle_containers  torch's zip/legacy checkpoint containers (storage checks), read through safe_pickle
    checkpoints        reading a checkpoint file into weights + the shared kind/dtype/shape/finiteness checks
    loaders            load_model(kind, path) and load_generator/load_arcface/load_parser, convert_checkpoint
    seeded             seeded RANDOM weights in the official formats, for tests, demos and benchmarks

Importing this package is light (no torch): the installer modules (catalogue, find, download, install,
installer_cli, file_checks) and the checks they share with the loader (model_file, pickle_scan, zip_directory,
safetensors_header) use the standard library only, and run before torch is installed.
"""
