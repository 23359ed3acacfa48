# clipc_plot: PNG charts drawn with cairo (common/plot.h) and the training-run plots built on them
# (common/metrics_plot.h). Included from common/CMakeLists.txt.
pkg_check_modules(CAIRO REQUIRED IMPORTED_TARGET GLOBAL cairo)
pkg_check_modules(FONTCONFIG REQUIRED IMPORTED_TARGET GLOBAL fontconfig)
add_library(clipc_plot STATIC plot.c metrics_plot.c)
target_link_libraries(clipc_plot PUBLIC clipc_common PkgConfig::CAIRO PkgConfig::FONTCONFIG ${MATH_LIB})
