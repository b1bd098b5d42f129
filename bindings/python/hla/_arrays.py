"""Array kinds: which framework an argument belongs to, outputs of the same kind, index arguments.

torch, JAX and ml_dtypes are optional: nothing here imports them. An object can only be a torch
tensor (a JAX array) if torch (jax) is already imported, so ``sys.modules`` is consulted instead.
"""
import sys

import numpy as np

from . import _hla

NUMPY, TORCH, JAX, DLPACK = "numpy", "torch", "jax", "dlpack"

FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")


ALIGN = 64

# native-order numpy float dtypes that an output can take as they are (bfloat16 dtypes of ml_dtypes
# go through numpy_float_dtype)
NATIVE_FLOATS = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))


def aligned_zeros(shape, dtype):
    """A zeroed C-contiguous numpy array whose data starts on a 64-byte boundary (a cache line): the
    library's kernels stream states in 64-byte vectors, and a row that straddles cache lines costs up
    to a quarter more per step."""
    dt = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    nbytes = dt.itemsize
    for s in shape:
        nbytes *= s
    buf = np.zeros(nbytes + ALIGN, dtype=np.uint8)
    off = (-buf.ctypes.data) % ALIGN
    return buf[off:off + nbytes].view(dt).reshape(shape)


def aligned_copy(a):
    """An aligned C-contiguous copy of a numpy array."""
    out = aligned_zeros(a.shape, a.dtype)
    np.copyto(out, a)
    return out


def kind(x):
    """'numpy', 'torch', 'jax', 'dlpack' (any other object with __dlpack__) or None."""
    if isinstance(x, np.ndarray):
        return NUMPY
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return TORCH
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, getattr(jax, "Array", ())):
        return JAX
    if not isinstance(x, type) and hasattr(x, "__dlpack__"):
        return DLPACK
    return None


def prepare(x, name="array"):
    """The object to hand to the extension: torch tensors that require grad are detached (DLPack
    refuses them; the computation is not differentiable through this API); DLPack producers without
    a shape attribute are viewed as numpy arrays (no copy), so that the caller can read their shape."""
    k = kind(x)
    if k == TORCH and x.requires_grad:
        return x.detach()
    if k == DLPACK and not hasattr(x, "shape"):
        try:
            return np.from_dlpack(x)
        except (TypeError, ValueError, BufferError, RuntimeError) as e:
            raise TypeError("%s could not be exported through DLPack: %s" % (name, e)) from None
    return x


def shape(x):
    """The shape of an array-like as a tuple of ints, or () when it has none."""
    try:
        return tuple(int(s) for s in x.shape)
    except (AttributeError, TypeError, ValueError):
        return ()


def dtype_name(x):
    """'float32', 'float64', 'bfloat16', 'float16', or another name / None."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        return None
    if kind(x) == TORCH:
        return str(dt).replace("torch.", "")
    try:
        return np.dtype(dt).name
    except TypeError:
        return str(dt)


def state_dtype(x):
    """The state dtype of computations on inputs like x: float64 for float64, else float32."""
    return np.float64 if dtype_name(x) == "float64" else np.float32


def numpy_float_dtype(x):
    """A native-byte-order numpy dtype for an output like x (numpy, JAX or other DLPack inputs).
    Inputs libhla does not take get a float64 placeholder: the library rejects them first."""
    try:
        dt = np.dtype(x.dtype)
    except (AttributeError, TypeError):
        return np.dtype(np.float64)
    if dt.name in FLOAT_NAMES:
        return dt.newbyteorder("=") if dt.kind == "f" else dt
    return np.dtype(np.float64)


def empty_like_kind(x, shape_):
    """An uninitialised output of shape_ for inputs like x: a torch tensor (same dtype, CPU) for torch,
    a numpy array otherwise (JAX outputs are converted by deliver()), whose memory comes from the output
    pool when it is 1 MiB or more (hla.output_pool)."""
    shape_ = tuple(max(int(s), 0) for s in shape_)
    if kind(x) == TORCH:
        import torch

        dt = x.dtype if dtype_name(x) in FLOAT_NAMES else torch.float32
        return torch.empty(shape_, dtype=dt)
    return _hla.empty(shape_, numpy_float_dtype(x))


def deliver(out, like):
    """The output in the kind of `like`: JAX in -> a JAX array (through DLPack when JAX can alias the
    buffer, else a copy); numpy, torch and other inputs -> out itself."""
    if kind(like) == JAX:
        import jax

        try:
            return jax.dlpack.from_dlpack(out)
        except Exception:  # noqa: BLE001 - e.g. an alignment JAX does not alias
            import jax.numpy as jnp

            return jnp.asarray(out)
    return out


def given_output(out, name="out"):
    """A caller's output array (out=), as the extension takes it: numpy, torch (not requiring grad: libhla's
    writes are not recorded by autograd) or another DLPack producer; JAX arrays are immutable."""
    k = kind(out)
    if k == JAX:
        raise TypeError("%s: JAX arrays are immutable; pass a numpy or torch array (or leave %s=None)"
                        % (name, name))
    if k is None:
        raise TypeError("%s must be an array (numpy, torch or DLPack), got %s" % (name, type(out).__name__))
    if k == TORCH and out.requires_grad:
        raise ValueError("%s requires grad: libhla writes it outside autograd" % name)
    return out


def index_array(x):
    """rows / cu_seqlens / src / dst: arrays go through as they are (int64 or int32, validated by the
    library); lists, tuples and ranges become numpy arrays; None stays None."""
    if x is None:
        return None
    if isinstance(x, (list, tuple, range)):
        a = np.asarray(x)
        if a.size == 0:
            a = a.astype(np.int64)
        return a
    if kind(x) is None and isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return np.asarray(x)      # 0-d: the library names it (it needs 1-D)
    return prepare(x, "index array")


def writable_numpy(array, name):
    """A writable numpy view of caller memory (no copy): numpy as is, torch through .numpy(), any other
    DLPack array through numpy.from_dlpack. JAX arrays are immutable and refused."""
    k = kind(array)
    if k == NUMPY:
        a = array
    elif k == TORCH:
        try:
            a = array.detach().numpy()
        except (TypeError, RuntimeError) as e:
            raise TypeError("%s: this torch tensor has no CPU numpy view: %s" % (name, e)) from None
    elif k == JAX:
        raise TypeError("%s: JAX arrays are immutable; a State or Segment needs writable memory "
                        "(use numpy.asarray(x).copy())" % name)
    elif k == DLPACK:
        try:
            a = np.from_dlpack(array)
        except (TypeError, ValueError, BufferError, RuntimeError) as e:
            raise TypeError("%s: cannot view it through DLPack: %s" % (name, e)) from None
    else:
        raise TypeError("%s must be an array (numpy, torch or DLPack), got %s"
                        % (name, type(array).__name__))
    if not a.flags.writeable:
        raise ValueError("%s is read-only" % name)
    return a
