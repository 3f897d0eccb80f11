mod app {
    pub mod tasks {
        /// Forgot `impl Task for Hello`.
        #[derive(Default)]
        pub struct Hello;
    }
}

mod flows {
    selinon_macros::include_flows!("ui-flows/hello.yml", "ui-flows/hello.yml");
}

fn main() {
    let _ = &flows::SYSTEM;
}
