namespace lakeloop::app {
int Main(int argc, char** argv);
}

int main(int argc, char** argv) { return lakeloop::app::Main(argc, argv); }
