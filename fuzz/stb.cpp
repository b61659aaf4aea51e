// The stb_image decoders and the PNG writer that image/image.cpp calls, compiled from
// libstb-dev's unmodified headers (Debian builds libstb.so from the same files with no
// option set) so that the fuzz build instruments them: see CMakeLists.txt.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>
