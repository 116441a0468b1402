# tests/consumer.cmake: build the user project in tests/consumer/ the four ways
# a user can get errgroup, and run it. Label `consumer`.
#
#   consumer.install                   cmake --install this build into a prefix
#   consumer.find_package.{configure,build,run}
#   consumer.add_subdirectory.{configure,build,run}
#   consumer.fetchcontent.{configure,build,run}   (SOURCE_DIR: no network)
#   consumer.pkg_config.{build,run}    c++ main.cpp $(pkg-config --cflags --libs errgroup)
#
# Steps are chained with fixtures, so `ctest -R consumer.find_package.run` also
# runs the install, configure and build it needs. A build takes both ctest job
# slots (PROCESSORS 2), so it never starves a timing-sensitive test.
# Included from tests/CMakeLists.txt with include(consumer.cmake).

set(consumer_source_dir ${CMAKE_CURRENT_LIST_DIR}/consumer)
set(consumer_binary_dir ${CMAKE_CURRENT_BINARY_DIR}/consumer)
set(consumer_prefix ${consumer_binary_dir}/prefix)
set(consumer_expected "consumer: sum=5050 available=2 first_error=system_error")

# A sanitized errgroup needs the sanitizer runtime in every program linking it.
set(consumer_cxx_flags "${CMAKE_CXX_FLAGS}")
set(consumer_sanitizer_flags "")
if(ERRGROUP_SANITIZER)
  set(consumer_sanitizer_flags -fsanitize=${ERRGROUP_SANITIZER})
  string(APPEND consumer_cxx_flags " -fsanitize=${ERRGROUP_SANITIZER}")
  string(STRIP "${consumer_cxx_flags}" consumer_cxx_flags)
endif()

# Lists inside one add_test argument need their ';' escaped.
set(consumer_prefix_path ${consumer_prefix} ${CMAKE_PREFIX_PATH})
string(REPLACE ";" "\\;" consumer_prefix_path "${consumer_prefix_path}")
set(consumer_cmake_args
  -G ${CMAKE_GENERATOR}
  -DCMAKE_BUILD_TYPE=$<CONFIG>
  -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
  "-DCMAKE_CXX_FLAGS=${consumer_cxx_flags}"
  "-DCMAKE_EXE_LINKER_FLAGS=${consumer_sanitizer_flags}"
  "-DCMAKE_PREFIX_PATH=${consumer_prefix_path}"
  -DERRGROUP_CONSUMER_SOURCE_DIR=${errgroup_SOURCE_DIR})
if(CMAKE_MAKE_PROGRAM)
  list(APPEND consumer_cmake_args -DCMAKE_MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM})
endif()
if(CMAKE_GENERATOR_PLATFORM)
  list(APPEND consumer_cmake_args -A ${CMAKE_GENERATOR_PLATFORM})
endif()
if(CMAKE_GENERATOR_TOOLSET)
  list(APPEND consumer_cmake_args -T ${CMAKE_GENERATOR_TOOLSET})
endif()

if(ERRGROUP_INSTALL)
  add_test(NAME consumer.install
           COMMAND ${CMAKE_COMMAND} --install ${errgroup_BINARY_DIR}
                   --prefix ${consumer_prefix} --config $<CONFIG>)
  set_tests_properties(consumer.install PROPERTIES
    LABELS consumer TIMEOUT 120 FIXTURES_SETUP consumer_installed)
  set(consumer_modes find_package add_subdirectory fetchcontent)
else()
  set(consumer_modes add_subdirectory fetchcontent)
endif()

foreach(mode IN LISTS consumer_modes)
  set(dir ${consumer_binary_dir}/${mode})
  add_test(NAME consumer.${mode}.configure
           COMMAND ${CMAKE_COMMAND} --fresh -S ${consumer_source_dir} -B ${dir}
                   ${consumer_cmake_args} -DERRGROUP_CONSUMER_MODE=${mode})
  add_test(NAME consumer.${mode}.build
           COMMAND ${CMAKE_COMMAND} --build ${dir} --config $<CONFIG>)
  # Through `cmake -E env`: ctest would warn that the program does not exist
  # until the build test made it.
  add_test(NAME consumer.${mode}.run COMMAND ${CMAKE_COMMAND} -E env ${dir}/consumer)
  set_tests_properties(consumer.${mode}.configure PROPERTIES
    LABELS consumer TIMEOUT 180 FIXTURES_SETUP consumer_${mode}_configured)
  if(mode STREQUAL "find_package")
    set_tests_properties(consumer.${mode}.configure PROPERTIES
      FIXTURES_REQUIRED consumer_installed)
  endif()
  set_tests_properties(consumer.${mode}.build PROPERTIES
    LABELS consumer TIMEOUT 900 PROCESSORS 2
    FIXTURES_REQUIRED consumer_${mode}_configured
    FIXTURES_SETUP consumer_${mode}_built)
  set_tests_properties(consumer.${mode}.run PROPERTIES
    LABELS consumer TIMEOUT 60
    FIXTURES_REQUIRED consumer_${mode}_built
    PASS_REGULAR_EXPRESSION "${consumer_expected}")
endforeach()

# pkg-config: compile main.cpp by hand against the installed prefix.
if(ERRGROUP_INSTALL)
  find_program(ERRGROUP_PKG_CONFIG NAMES pkg-config pkgconf)
  find_program(ERRGROUP_SH NAMES sh)
  set(dir ${consumer_binary_dir}/pkg_config)
  set(pkg_config_path ${consumer_prefix}/${CMAKE_INSTALL_LIBDIR}/pkgconfig)
  foreach(p IN LISTS CMAKE_PREFIX_PATH)
    list(APPEND pkg_config_path ${p}/${CMAKE_INSTALL_LIBDIR}/pkgconfig
                                ${p}/lib/pkgconfig)
  endforeach()
  string(REPLACE ";" ":" pkg_config_path "${pkg_config_path}")
  # $1 compiler, $2 pkg-config, $3 source, $4 output, then extra flags. The
  # -L directories pkg-config prints become rpaths (TBB outside /usr).
  set(script [=[set -e
cxx=$1 pc=$2 src=$3 out=$4
shift 4
mkdir -p "$(dirname "$out")"
flags=$("$pc" --cflags --libs errgroup)
rpaths=$("$pc" --libs-only-L errgroup | sed 's/-L/-Wl,-rpath,/g')
echo "$cxx" "$@" "$src" -o "$out" $flags $rpaths
"$cxx" "$@" "$src" -o "$out" $flags $rpaths]=])
  add_test(NAME consumer.pkg_config.build
           COMMAND ${ERRGROUP_SH} -c "${script}" sh ${CMAKE_CXX_COMPILER}
                   ${ERRGROUP_PKG_CONFIG} ${consumer_source_dir}/main.cpp
                   ${dir}/consumer ${consumer_sanitizer_flags})
  add_test(NAME consumer.pkg_config.run COMMAND ${CMAKE_COMMAND} -E env ${dir}/consumer)
  set_tests_properties(consumer.pkg_config.build PROPERTIES
    LABELS consumer TIMEOUT 300
    ENVIRONMENT "PKG_CONFIG_PATH=${pkg_config_path}"
    FIXTURES_REQUIRED consumer_installed
    FIXTURES_SETUP consumer_pkg_config_built)
  set_tests_properties(consumer.pkg_config.run PROPERTIES
    LABELS consumer TIMEOUT 60
    FIXTURES_REQUIRED consumer_pkg_config_built
    PASS_REGULAR_EXPRESSION "${consumer_expected}")
  if(NOT ERRGROUP_PKG_CONFIG OR NOT ERRGROUP_SH)
    set_tests_properties(consumer.pkg_config.build consumer.pkg_config.run
                         PROPERTIES DISABLED TRUE)
    message(STATUS "consumer.pkg_config disabled: pkg-config or sh not found")
  endif()
endif()
