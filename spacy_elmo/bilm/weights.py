"""Reading and writing bilm-tf / AllenNLP weight files (``options.json`` + HDF5).

Dataset names and layouts are those of bilm-tf's ``dump_weights.py``. Every
dataset is read and checked before a model is built, so a failed load leaves
nothing half-built; files are written to a temporary name and moved into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import ElmoWeightsError
from .chars import N_RAW_CHARACTERS
from .cpu_matmul import check_precision
from .model import ElmoBiLM, StateMode
from .options import ElmoOptions, read_options
from .token_encoder import DEFAULT_CACHE_WORDS, TokenEncoder, check_cache_size

Converter = Callable[[np.ndarray], np.ndarray]


def _identity(array: np.ndarray) -> np.ndarray:
    return array


@dataclass(frozen=True)
class WeightEntry:
    """One HDF5 dataset and the model parameter(s) it fills.

    ``to_model`` maps the file array to the parameter's layout, ``to_file``
    maps it back; both are exact (transposes, splits and a zero row).
    """

    dataset: str
    shape: tuple[int, ...]
    parameter: str
    to_model: Converter = _identity
    to_file: Converter = _identity


def _lstm_path(direction: int, layer: int, name: str) -> str:
    return f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/{name}"


def weight_entries(options: ElmoOptions) -> Iterator[WeightEntry]:
    """Every dataset the options call for, with its expected shape."""
    e, nf, P, C = options.char_embedding_dim, options.n_filters, options.projection_dim, options.lstm_dim
    yield WeightEntry(
        "char_embed",
        (N_RAW_CHARACTERS, e),
        "token_encoder.cnn.embedding.weight",
        lambda a: np.concatenate([np.zeros((1, a.shape[1]), a.dtype), a]),
        lambda a: a[1:],
    )
    for i, (width, n_out) in enumerate(options.filters):
        yield WeightEntry(
            f"CNN/W_cnn_{i}",
            (1, width, e, n_out),
            f"token_encoder.cnn.convolutions.{i}.weight",
            lambda a: a[0].transpose(2, 1, 0),
            lambda a: a.transpose(2, 1, 0)[None],
        )
        yield WeightEntry(f"CNN/b_cnn_{i}", (n_out,), f"token_encoder.cnn.convolutions.{i}.bias")
    for k in range(options.n_highway):
        for part in ("carry", "transform"):
            yield WeightEntry(f"CNN_high_{k}/W_{part}", (nf, nf), f"token_encoder.highways.{k}.{part}_weight")
            yield WeightEntry(f"CNN_high_{k}/b_{part}", (nf,), f"token_encoder.highways.{k}.{part}_bias")
    if options.use_projection:
        yield WeightEntry("CNN_proj/W_proj", (nf, P), "token_encoder.projection_weight")
        yield WeightEntry("CNN_proj/b_proj", (P,), "token_encoder.projection_bias")
    for direction, stack in ((0, "forward_layers"), (1, "backward_layers")):
        for layer in range(options.n_layers):
            prefix = f"lstm.{stack}.{layer}"
            # W_0 holds the input rows [:P] and the recurrent rows [P:]; see _split_w0.
            yield WeightEntry(
                _lstm_path(direction, layer, "W_0"), (2 * P, 4 * C), f"{prefix}.input_weight+hidden_weight"
            )
            yield WeightEntry(_lstm_path(direction, layer, "B"), (4 * C,), f"{prefix}.bias")
            yield WeightEntry(_lstm_path(direction, layer, "W_P_0"), (C, P), f"{prefix}.projection_weight")


def _fail(path: Path, message: str) -> ElmoWeightsError:
    return ElmoWeightsError(f"{path}: {message}")


def _open_hdf5(path: Path) -> h5py.File:
    if not path.is_file():
        raise ElmoWeightsError(f"weight file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise _fail(path, f"not a readable HDF5 weight file (truncated or another format: {err})") from None


def _check_extra_layers(path: Path, handle: h5py.File, options: ElmoOptions, options_name: str) -> None:
    """Layers present in the file beyond what the options describe are a mismatch."""
    checks = [
        (f"CNN/W_cnn_{len(options.filters)}", f"{len(options.filters)} char_cnn.filters"),
        (f"CNN_high_{options.n_highway}", f"char_cnn.n_highway = {options.n_highway}"),
        (_lstm_path(0, options.n_layers, "W_0"), f"lstm.n_layers = {options.n_layers}"),
    ]
    for dataset, setting in checks:
        if dataset in handle:
            raise _fail(
                path, f"has dataset '{dataset}', but {options_name} says {setting}: options and weights disagree"
            )


def _checked_datasets(
    path: Path, handle: h5py.File, options: ElmoOptions, options_name: str
) -> tuple[ElmoOptions, dict[str, h5py.Dataset]]:
    """Every dataset the options call for, checked for presence, shape and dtype (nothing read yet)."""
    if options.n_filters == options.projection_dim and "CNN_proj" in handle:
        options = replace(options, use_projection=True)
    _check_extra_layers(path, handle, options, options_name)
    datasets: dict[str, h5py.Dataset] = {}
    for entry in weight_entries(options):
        if entry.dataset not in handle:
            raise _fail(path, f"missing dataset '{entry.dataset}' (expected shape {entry.shape} from {options_name})")
        dataset = handle[entry.dataset]
        if not isinstance(dataset, h5py.Dataset):
            raise _fail(path, f"'{entry.dataset}' is a group, expected a dataset of shape {entry.shape}")
        if dataset.shape != entry.shape:
            raise _fail(
                path,
                f"dataset '{entry.dataset}' has shape {dataset.shape}, expected {entry.shape} "
                f"from {options_name}: options and weights disagree",
            )
        if dataset.dtype.kind != "f":
            raise _fail(path, f"dataset '{entry.dataset}' has dtype {dataset.dtype}, expected float32")
        datasets[entry.dataset] = dataset
    return options, datasets


def _read(path: Path, dataset: h5py.Dataset, rows: slice = slice(None)) -> np.ndarray:
    """``dataset[rows]`` as float32, checked to be finite."""
    try:
        array = np.asarray(dataset[rows], dtype=np.float32)
    except OSError as err:
        name = dataset.name.lstrip("/")
        raise _fail(path, f"cannot read dataset '{name}' (file truncated or damaged: {err})") from None
    if not np.isfinite(array).all():
        raise _fail(path, f"dataset '{dataset.name.lstrip('/')}' holds NaN or infinite values")
    return array


def read_weight_arrays(
    weight_file: str | Path, options: ElmoOptions, options_name: str = "options"
) -> tuple[ElmoOptions, dict[str, np.ndarray]]:
    """Read and check every dataset; returns the options (projection settled) and the arrays.

    Raises ``ElmoWeightsError`` naming the file, the dataset and expected vs found shape.
    """
    path = Path(weight_file)
    with _open_hdf5(path) as handle:
        options, datasets = _checked_datasets(path, handle, options, options_name)
        return options, {name: _read(path, dataset) for name, dataset in datasets.items()}


# Rows of a weight matrix read from the file at once: the load needs no second copy of
# the model, only blocks of about this many bytes.
READ_BLOCK_BYTES = 4 * 2**20


def _read_into(path: Path, dataset: h5py.Dataset, target: torch.Tensor, first_row: int = 0) -> None:
    """Rows ``first_row:`` of a 2-D dataset into ``target (rows, N)``, a block at a time."""
    rows, width = target.shape
    block = max(1, READ_BLOCK_BYTES // (4 * width))
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        target[start:stop].copy_(torch.from_numpy(_read(path, dataset, slice(first_row + start, first_row + stop))))


def _fill_parameters(path: Path, model: ElmoBiLM, datasets: dict[str, h5py.Dataset]) -> None:
    """Every parameter read straight from its dataset (the file's layout converted on the way)."""
    parameters = dict(model.named_parameters())
    assigned: set[str] = set()
    with torch.no_grad():
        for entry in weight_entries(model.options):
            dataset = datasets[entry.dataset]
            if entry.parameter.endswith("input_weight+hidden_weight"):
                prefix = entry.parameter.rsplit(".", 1)[0]
                split = model.options.projection_dim
                _read_into(path, dataset, parameters[f"{prefix}.input_weight"])
                _read_into(path, dataset, parameters[f"{prefix}.hidden_weight"], first_row=split)
                assigned.update((f"{prefix}.input_weight", f"{prefix}.hidden_weight"))
            elif entry.to_model is _identity and len(entry.shape) == 2:
                _read_into(path, dataset, parameters[entry.parameter])
                assigned.add(entry.parameter)
            else:  # small: biases, character embeddings, convolution filters
                array = np.ascontiguousarray(entry.to_model(_read(path, dataset)))
                parameters[entry.parameter].copy_(torch.from_numpy(array))
                assigned.add(entry.parameter)
    # load_bilm builds the model uninitialised: a parameter no dataset sets would hold garbage.
    unset = sorted(set(parameters) - assigned)
    if unset:
        raise RuntimeError(f"no weight dataset maps to the model's parameters {unset}")


def load_bilm(
    options_file: str | Path,
    weight_file: str | Path,
    *,
    state: StateMode = "reset",
    precision: str = "fp32",
    word_cache_size: int = DEFAULT_CACHE_WORDS,
) -> ElmoBiLM:
    """Load a biLM from bilm-tf / AllenNLP files; returned in eval mode on the CPU.

    ``precision``: ``fp32`` (exact) or the faster ``bf16`` / ``int8`` of CPU inference
    (``ElmoBiLM.precision``). ``word_cache_size``: entries of the token encoder's
    inference cache (``ElmoBiLM.word_cache_size``; 0 turns it off). ``spacy_elmo.load_bilm``
    also takes one argument: a name, a directory of either format (an ELMoForManyLangs model
    too), an archive or a URL.

    Every dataset's presence, shape and dtype are checked before the model is built;
    the values are then read block by block straight into the parameters (no second
    copy of the weights in memory). A dataset that cannot be read or holds NaN raises
    ``ElmoWeightsError`` and no model is returned.
    """
    check_cache_size(word_cache_size)
    check_precision(precision)
    options = read_options(options_file)
    path = Path(weight_file)
    with _open_hdf5(path) as handle:
        options, datasets = _checked_datasets(path, handle, options, str(options_file))
        # every parameter is assigned by _fill_parameters
        model = ElmoBiLM(options, state=state, initialize=False, word_cache_size=word_cache_size)
        _fill_parameters(path, model, datasets)
    model.precision = precision
    return model.eval()


def _check_bilm_tf(model: ElmoBiLM) -> None:
    # The bilm-tf layout is that of the character CNN front end (an ELMoForManyLangs model has its own).
    if not isinstance(model.token_encoder, TokenEncoder):
        raise ElmoWeightsError(
            "an ELMoForManyLangs model has no bilm-tf weight file layout; save it with bilm.efml.save_efml"
        )


def weight_arrays(model: ElmoBiLM) -> dict[str, np.ndarray]:
    """The model's parameters as reference-layout float32 arrays, by dataset name."""
    _check_bilm_tf(model)
    parameters = {name: p.detach().cpu().float().numpy() for name, p in model.named_parameters()}
    arrays = {}
    for entry in weight_entries(model.options):
        if entry.parameter.endswith("input_weight+hidden_weight"):
            prefix = entry.parameter.rsplit(".", 1)[0]
            array = np.concatenate([parameters[f"{prefix}.input_weight"], parameters[f"{prefix}.hidden_weight"]])
        else:
            array = entry.to_file(parameters[entry.parameter])
        arrays[entry.dataset] = np.ascontiguousarray(array, dtype=np.float32)
    return arrays


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then move it into place.

    A failure leaves ``path`` as it was and no temporary file behind. The file
    gets the ordinary permissions (``0o666`` less the umask), not mkstemp's 0600.
    The temporary file is ``.<name>.<pid>.<random>.tmp``, so that a process killed before
    it could clean up leaves a file ``remove_stale_temp_files`` recognises as dead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete the temporary files ``atomic_write`` left beside ``path`` in processes that are gone.

    A process killed with SIGKILL (or by the OOM killer) cannot remove its temporary file; the next
    write of the same ``path`` calls this. Files of live processes (a concurrent writer) are kept.
    Returns the files removed.
    """
    prefix = _temp_prefix(path)
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return removed
    for candidate in candidates:
        pid_text = candidate.name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or _process_is_alive(pid):
            continue
        try:
            candidate.unlink()
        except FileNotFoundError:
            continue
        removed.append(candidate)
    return removed


def write_weights(model: ElmoBiLM, weight_file: str | Path) -> None:
    """Write the reference-layout HDF5 file (no softmax), atomically."""
    arrays = weight_arrays(model)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as handle:
            for name, array in arrays.items():
                handle.create_dataset(name, data=array)

    atomic_write(Path(weight_file), write)


def write_options(options: ElmoOptions, options_file: str | Path) -> None:
    """Write ``options.json`` (inference form: 262 characters), atomically."""
    data = replace(options, n_characters=262).to_dict()
    atomic_write(Path(options_file), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def save_bilm(model: ElmoBiLM, directory: str | Path, weight_name: str = "weights.hdf5") -> tuple[Path, Path]:
    """Write ``options.json`` and the weight file into ``directory``; returns both paths."""
    directory = Path(directory)
    options_file, weight_file = directory / "options.json", directory / weight_name
    write_weights(model, weight_file)
    write_options(model.options, options_file)
    return options_file, weight_file
