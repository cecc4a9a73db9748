# Cross build for 64-bit ARM (in-car units) on a Debian amd64 machine with the arm64 architecture
# added (`dpkg --add-architecture arm64`) and the :arm64 -dev packages installed beside the amd64
# ones (scripts/test -L cross installs them: scripts/lib/deps.sh, navietakie_cross_packages).
#   cmake -S . -B build-cross --toolchain cmake/toolchains/aarch64-linux-gnu.cmake
# The libraries come from the multiarch directories (/usr/lib/aarch64-linux-gnu, headers in
# /usr/include shared with amd64), not from a separate sysroot. docs/arm64.md says more.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(navietakie_cross_triplet aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${navietakie_cross_triplet}-gcc)
set(CMAKE_CXX_COMPILER ${navietakie_cross_triplet}-g++)

# Find programs on the build machine, libraries, headers and CMake packages for the target only.
# CMAKE_LIBRARY_ARCHITECTURE makes find_* and find_package look in the arm64 multiarch directories
# (/usr/lib/aarch64-linux-gnu, its cmake/ packages) under the root "/".
set(CMAKE_LIBRARY_ARCHITECTURE ${navietakie_cross_triplet})
set(CMAKE_FIND_ROOT_PATH /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config (lmdb, libjwt) reads the arm64 .pc files only: Debian has no aarch64-linux-gnu-pkg-config
# without pkg-config:arm64, which would replace the amd64 one.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${navietakie_cross_triplet}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# libcereal-dev is Architecture: all (headers only) but installs its CMake package files under the
# amd64 library directory, where a target-only search does not look.
if(NOT cereal_DIR AND EXISTS /usr/lib/x86_64-linux-gnu/cmake/cereal/cerealConfig.cmake)
  set(cereal_DIR /usr/lib/x86_64-linux-gnu/cmake/cereal CACHE PATH "libcereal-dev's CMake files (arch-independent)")
endif()

# ctest runs the arm64 test executables under user-mode qemu (Debian qemu-user-static). The
# loader and libraries are the multiarch ones under "/": QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
# (the cross toolchain's own glibc, a different build from libc6:arm64) hangs every program at its
# first thread. qemu-aarch64-static resolves /lib/ld-linux-aarch64.so.1 relative to QEMU_LD_PREFIX.
set(CMAKE_CROSSCOMPILING_EMULATOR /usr/bin/env;QEMU_LD_PREFIX=/;qemu-aarch64-static)
