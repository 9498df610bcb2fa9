"""ksmbook: a simulated Linux kernel for learning madvise(MADV_MERGEABLE) and KSM.

    import ksmbook as kb
    k = kb.Kernel(profile="seed", config_ksm=True)
    p = k.spawn()
    a = p.mmap(8 * kb.PAGE_SIZE, kb.PROT_READ | kb.PROT_WRITE, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
    p.madvise(a + 2 * kb.PAGE_SIZE, 4 * kb.PAGE_SIZE, kb.MADV_MERGEABLE)
    print(p.maps())
"""

from .constants import HPAGE_SIZE, MADV, MAP, MMF, MREMAP, PAGE_SIZE, PROT, VM
from .kernel import DRIVER_STYLES, KSM_KCONFIG_HELP, Kernel, Process
from .ksm import PR_GET_MEMORY_MERGE, PR_SET_MEMORY_MERGE
from .ksmd import KsmdIdle, KsmdUnavailable
from .mm import VMA, File
from .procfs import MapEntry
from .profiles import PROFILES as _PROFILE_TABLE
from .profiles import Profile, get_profile
from .trace import Trace, errno_name

#: The names of the kernels the simulator can boot.
PROFILES = tuple(_PROFILE_TABLE)

# __members__, not iteration: an IntFlag iterates neither its zero member (PROT_NONE, VM_NONE)
# nor multi-bit ones (MAP_SHARED_VALIDATE).
globals().update({name: m for enum_ in (PROT, MAP, MREMAP, MADV, VM, MMF)
                  for name, m in enum_.__members__.items()})

__all__ = ["Kernel", "Process", "VMA", "File", "MapEntry", "Trace", "Profile", "PROFILES",
           "get_profile", "errno_name", "PAGE_SIZE", "HPAGE_SIZE", "PROT", "MAP", "MREMAP", "MADV",
           "VM", "MMF", "DRIVER_STYLES", "KSM_KCONFIG_HELP", "PR_SET_MEMORY_MERGE",
           "PR_GET_MEMORY_MERGE", "KsmdIdle", "KsmdUnavailable"]
__all__ += [name for enum_ in (PROT, MAP, MREMAP, MADV, VM, MMF) for name in enum_.__members__]
__version__ = "0.1.0"
