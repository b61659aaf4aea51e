// The program behind each sparo_link_check_<layer> target (CMakeLists.txt): the layer's archive
// is linked whole beside the layers below it, so that the link itself fails when the layer
// uses a symbol defined only in a layer above it. The program is never run.
int main() { return 0; }
