#!/bin/sh
# Build-mode checks: C99 -pedantic -Werror, C++, header included twice, API from a second unit.
set -e
cd "$(dirname "$0")/.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
I="-I. -I${STB:-/usr/include/stb}"
cat > "$T/impl.c" <<'C'
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include "imret.h"
C
cat > "$T/user.c" <<'C'
#include "imret.h"
#include "imret.h"
#include <stdio.h>
int main(void) {
    imret_model *m = NULL;
    imret_result r = imret_model_load_file("/nonexistent.imw", NULL, &m);
    printf("second unit: %s (%s) simd=%s\n", imret_result_string(r), imret_last_error(), imret_simd_name(imret_simd_detect()));
    return r == IMRET_ERROR_IO && m == NULL ? 0 : 1;
}
C
echo "C99 -pedantic -Werror (implementation unit, header twice)"
${CC:-cc} -std=c99 -pedantic -Wall -Wextra -Werror $I -c "$T/impl.c" -o "$T/impl.o"
echo "C99 -pedantic -Werror (API-only unit)"
${CC:-cc} -std=c99 -pedantic -Wall -Wextra -Werror $I -c "$T/user.c" -o "$T/user.o"
${CC:-cc} "$T/impl.o" "$T/user.o" -o "$T/two_units" -lm
"$T/two_units"
echo "C99 with OpenMP"
${CC:-cc} -std=c99 -pedantic -Wall -Wextra -Werror -fopenmp $I -c "$T/impl.c" -o "$T/impl_omp.o"
echo "C++ (g++ -Wall -Wextra -Werror), implementation and API unit"
cp "$T/impl.c" "$T/impl.cpp"; cp "$T/user.c" "$T/user.cpp"
${CXX:-c++} -Wall -Wextra -Werror $I -c "$T/impl.cpp" -o "$T/impl_cpp.o"
${CXX:-c++} -Wall -Wextra -Werror $I -c "$T/user.cpp" -o "$T/user_cpp.o"
${CXX:-c++} "$T/impl_cpp.o" "$T/user_cpp.o" -o "$T/two_units_cpp"
"$T/two_units_cpp"
echo "IMRET_STATIC + IMRET_NO_SIMD + IMRET_NO_OPENMP"
printf '#define IMRET_STATIC\n#define IMRET_NO_SIMD\n#define IMRET_NO_OPENMP\n#define IMRET_IMPLEMENTATION\n#include "imret.h"\nint main(void){return imret_simd_detect()==IMRET_SIMD_SCALAR?0:1;}\n' > "$T/static.c"
${CC:-cc} -std=c99 -pedantic -Wall -Wextra -Werror -fopenmp $I "$T/static.c" -o "$T/static" -lm
"$T/static"
echo "C++ -O2 (g++ warns differently when optimising)"
${CXX:-c++} -O2 -Wall -Wextra -Werror -fopenmp $I -c "$T/impl.cpp" -o "$T/impl_cpp_o2.o"
echo "C99 -O2 -Wall -Wextra -Werror with IMRET_NO_STB_IMAGE + IMRET_NO_STDIO (memory-only, host decodes)"
printf '#define IMRET_NO_STB_IMAGE\n#define IMRET_NO_STDIO\n#define IMRET_IMPLEMENTATION\n#include "imret.h"\nint main(void){imret_model *m=0; return imret_model_load_memory("x",1,0,&m)==IMRET_OK;}\n' > "$T/nostb.c"
${CC:-cc} -std=c99 -pedantic -O2 -Wall -Wextra -Werror $I "$T/nostb.c" -o "$T/nostb" -lm
"$T/nostb"
echo "build modes ok"
