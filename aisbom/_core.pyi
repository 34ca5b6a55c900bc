"""Type stub for aisbom._core, the C engine (csrc/module.c).

Every ``data`` argument is any object with the buffer protocol (bytes,
bytearray, memoryview, mmap); the C code reads it without copying.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

from typing_extensions import Buffer

# Severities of scan() findings.
SEV_INFO: int
SEV_SUSPICIOUS: int
SEV_ERROR: int
SEV_MALICIOUS: int

# Bits of the ``uses`` field of scan() globals: how the pickle used a global.
USE_REDUCE: int
USE_NEWOBJ: int
USE_NEWOBJ_EX: int
USE_OBJ: int
USE_INST: int
USE_BUILD: int
USE_METHOD: int
USE_STACK_GLOBAL: int
USE_PROTO_LT3: int
USE_PROTO_GE3: int

# Bits of the ``anomalies`` field of zip_entries() records.
ZIP_ORPHAN: int
ZIP_ALTERNATE: int
ZIP_DUPLICATE: int
ZIP_DIRECTORY: int

# The C code names ``data`` in its keyword list, so scan(data=...) works at
# runtime even though the docstring spells it positional-only.
#
# Returns {'members': [(name, format, file_offset, size, parent)],
#          'globals': [(member, module, name, first_offset, opcode, count, uses)],
#          'findings': [(rule, severity, member, global, offset, message)],
#          'dropped': int, 'dropped_worst': int, 'incomplete': bool};
# names, formats, modules and messages are str, or bytes when not UTF-8.
def scan(data: Buffer, max_inflate: int = 2**31, max_depth: int = 4) -> Dict[str, Any]: ...

def sniff(data: Buffer, /) -> str: ...
def pickle_end(data: Buffer, start: int = 0, /) -> Optional[int]: ...
def inflate_raw(data: Buffer, max_out: int, /) -> bytes: ...
def unpickle(
    data: Buffer,
    globals: Dict[str, Any],
    *,
    start: int = 0,
    calls: Optional[Dict[int, Tuple[Any, Callable[..., Any]]]] = None,
    newobjs: Optional[Dict[int, Tuple[Any, Callable[..., Any]]]] = None,
    builds: Optional[Dict[int, Tuple[type, Callable[[Any, Any], Any]]]] = None,
    persistent_load: Optional[Callable[[Any], Any]] = None,
    encoding: str = "ASCII",
    errors: str = "strict",
    max_stack: int = 2**24,
    max_memo: int = 2**26,
) -> Tuple[Any, int]: ...

# One (name, method, flags, crc, comp_size, size, data_offset, anomalies) per member.
def zip_entries(data: Buffer, /) -> List[Tuple[bytes, int, int, int, int, int, int, int]]: ...
