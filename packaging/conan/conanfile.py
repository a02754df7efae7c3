# Conan 2 recipe for libpool, built from this checkout (no source download). From the checkout:
#
#   conan profile detect                                # once, without a default profile
#   conan create packaging/conan                        # shared library (the default)
#   conan create packaging/conan -o "&:shared=False"    # static library
#
# then a consumer's conanfile.txt (the version is Cargo.toml's; shared=False links libpool.a)
#
#   [requires]
#   libpool/0.1.0
#   [options]
#   libpool/*:shared=False
#   [generators]
#   CMakeDeps
#   CMakeToolchain
#
# and its CMakeLists.txt: find_package(Pool REQUIRED), target_link_libraries(app PRIVATE
# Pool::pool); with the PkgConfigDeps generator, `pkg-config --cflags --libs pool`. Build it:
#
#   conan install . --output-folder=build
#   cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE=build/conan_toolchain.cmake -DCMAKE_BUILD_TYPE=Release
#   cmake --build build && (. build/conanrun.sh && build/app)   # conanrun.sh: the shared lib's path
#
# The package holds pool.h, pool.hpp, the manual pages (share/man) and either libpool.so
# (+ soname links) or libpool.a, as `shared` says. Building needs cargo (rustup): the
# project's CMakeLists.txt drives it, and it
# may fetch crates from crates.io. Linux only. libpool_mpi is not packaged (it needs the
# system's MPI; see CMakeLists.txt's POOL_WITH_MPI).
import os
import re

from conan import ConanFile
from conan.errors import ConanException, ConanInvalidConfiguration
from conan.tools.build import cross_building
from conan.tools.cmake import CMake, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rm, rmdir

required_conan_version = ">=2.0"

# What CMakeLists.txt needs to build and install libpool, relative to the checkout's root
# (docs/man: the manual pages `cmake --install` installs).
SOURCES = ["Cargo.toml", "Cargo.lock", "build.rs", "CMakeLists.txt", "cmake/*", "include/*", "src/*", "docs/man/*"]
# Where package() keeps rustc's native-static-libs list for package_info().
NATIVE_LIBS_FILE = os.path.join("share", "libpool", "native-static-libs.txt")


def cargo_package_field(conanfile, field):
    """A string field of Cargo.toml's [package] table: the version, license and description
    come from there only. Cargo.toml is two levels up in the checkout, beside the recipe in
    Conan's cache (export() puts it there)."""
    here = conanfile.recipe_folder
    for path in (os.path.join(here, "Cargo.toml"), os.path.join(here, "..", "..", "Cargo.toml")):
        if os.path.isfile(path):
            break
    else:
        raise ConanException(f"Cargo.toml not found beside or two levels above {here}")
    section = None
    for line in load(conanfile, path).splitlines():
        header = re.match(r"\s*\[([^\]]*)\]", line)
        if header:
            section = header.group(1).strip()
            continue
        value = re.match(rf'\s*{field}\s*=\s*"([^"]*)"', line)
        if section == "package" and value:
            return value.group(1)
    raise ConanException(f"no [package] {field} in {path}")


class LibpoolConan(ConanFile):
    name = "libpool"
    topics = ("multiprocessing", "process-pool", "parallel", "c", "c++")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    # No fPIC option: rustc always emits position-independent code on Linux.
    options = {"shared": [True, False]}
    default_options = {"shared": True}

    def init(self):
        self.license = cargo_package_field(self, "license")
        self.description = cargo_package_field(self, "description")

    def set_version(self):
        self.version = cargo_package_field(self, "version")

    def export(self):
        copy(self, "Cargo.toml", os.path.join(self.recipe_folder, "..", ".."), self.export_folder)

    def export_sources(self):
        root = os.path.join(self.recipe_folder, "..", "..")
        for pattern in SOURCES:
            copy(self, pattern, root, self.export_sources_folder)

    def layout(self):
        cmake_layout(self)

    def package_id(self):
        # cargo builds the release profile whatever build_type says, and the library's ABI is
        # C: neither the C/C++ compiler nor build_type changes the binary.
        self.info.settings.rm_safe("compiler")
        self.info.settings.rm_safe("build_type")

    def validate(self):
        if self.settings.os != "Linux":
            raise ConanInvalidConfiguration("libpool supports Linux only (it uses memfd, pidfd and fork)")

    def validate_build(self):
        if cross_building(self):
            raise ConanInvalidConfiguration("libpool: cross-building is not supported (cargo builds for the build machine)")

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["POOL_WITH_MPI"] = "OFF"
        tc.cache_variables["POOL_CARGO_FLAGS"] = "--locked"  # the exported Cargo.lock, as is
        tc.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        cmake = CMake(self)
        cmake.install()
        # Conan's generators write the CMake and pkg-config files from package_info().
        rmdir(self, os.path.join(self.package_folder, "lib", "cmake"))
        rmdir(self, os.path.join(self.package_folder, "lib", "pkgconfig"))
        # Only the kind `shared` asks for: beside libpool.so, `-lpool` and CMakeDeps'
        # find_library would pick the .so even in a static package.
        libdir = os.path.join(self.package_folder, "lib")
        if self.options.shared:
            rm(self, "libpool.a", libdir)
        else:
            rm(self, "libpool.so*", libdir)
            copy(self, "native-static-libs.txt", os.path.join(self.build_folder, "generated"),
                 os.path.dirname(os.path.join(self.package_folder, NATIVE_LIBS_FILE)))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "Pool")
        self.cpp_info.set_property("cmake_target_name", "Pool::pool")
        self.cpp_info.set_property("pkg_config_name", "pool")
        self.cpp_info.libs = ["pool"]
        if not self.options.shared:
            # What rustc reported for libpool.a (--print native-static-libs), e.g.
            # "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc".
            for flag in load(self, os.path.join(self.package_folder, NATIVE_LIBS_FILE)).split():
                if flag.startswith("-l"):
                    self.cpp_info.system_libs.append(flag[2:])
                else:
                    self.cpp_info.exelinkflags.append(flag)
                    self.cpp_info.sharedlinkflags.append(flag)
