/* Stand-in for HAMi-core's libvgpu.so in CI, where there is no GPU and no CUDA.
 * It loads into every process through /etc/ld.so.preload like the real library, so the
 * tests can see the preload wiring work; it limits nothing. The real library is built
 * from HAMi-core's source and tested on a GPU machine (tests marked gpu). */
#include <stdlib.h>
static void __attribute__((constructor)) gpupool_stand_in(void) {
    setenv("GPUPOOL_HAMI_STAND_IN", "loaded", 0);
}
